"""Translation: the offline text pairs, generate() for both frameworks, what a
translation model is measured by, the article's Marian checkpoint and the weights files."""
