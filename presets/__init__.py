"""Shipped presets (TOML). A package so they are found from an installed wheel via importlib.resources."""
