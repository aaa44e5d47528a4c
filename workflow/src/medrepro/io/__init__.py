"""Reading and writing files: images, landmarks, tables; atomic writes; input errors."""
