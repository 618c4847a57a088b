"""Audio plumbing shared by the speech and transcription paths: codecs and subtitle renderers."""
