"""What the pipeline writes about a model for people to read: the model card of each registered version."""
