"""The docrerank command line."""
