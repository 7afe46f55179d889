"""Where images come in: discovery, checking, splitting, augmentation and loading."""
