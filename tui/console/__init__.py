"""Rich command-line front ends: the presets table, the eval report, the rewards playground."""
