"""Delivery service: marketing plans with approval, guards and exactly-once fan-out to gateways."""
