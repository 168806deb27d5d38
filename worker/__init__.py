"""vendor-onboarding: turns vendors' product CSV uploads in S3 into catalogue data."""
