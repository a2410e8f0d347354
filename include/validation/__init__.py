"""Data validation with Great Expectations: the suite built from a dataset spec, and running it on a batch."""
