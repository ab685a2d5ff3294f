"""Segment service: audience rules compiled to SQL, snapshots, real-time membership, insight."""
