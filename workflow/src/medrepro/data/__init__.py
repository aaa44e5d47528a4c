"""Case lists, splits and network inputs shared by all papers."""
