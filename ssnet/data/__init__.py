"""Data: the dataset contract, the phantom, importers, the split and the training dataset."""
