"""Programs that go *into* example images (copied as files, never imported by isobench)."""
