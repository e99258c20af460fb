"""Thin Typer layer: parse options, load settings, call engine functions."""
