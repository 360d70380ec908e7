"""The pure model: media types, manifests, indexes, platforms, history rows and the DataFrames'
columns. No I/O."""
