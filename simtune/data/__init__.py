"""Dataset loaders (GTA5, SYNTHIA, Cityscapes) and the Cityscapes val splits."""
