// replaced as the folder fills
