"""Browser clients: cookie sessions, Uppy-compatible (Companion) S3 signing routes, the upload page."""
