"""Shipped pipeline templates (YAML package data); see coordinator.workflows.templates."""
