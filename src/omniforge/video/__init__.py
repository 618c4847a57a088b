"""Video making that is no model's own: assembling scenes (images, narration, subtitles) into MP4."""
