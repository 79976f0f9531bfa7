"""napari plugin for chromarate (reader, widgets, sample data): not yet built; see issue 5."""
