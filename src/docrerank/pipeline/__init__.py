"""The DocReRank generation pipeline: verified positives and hard negative queries per page."""
