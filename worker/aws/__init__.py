"""Adapters for the AWS services: thin, given their clients, with botocore's errors classified
once, here."""
