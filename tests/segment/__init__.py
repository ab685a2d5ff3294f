"""Tests of the segment service."""
