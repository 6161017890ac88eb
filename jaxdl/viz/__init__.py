"""Pictures and pages: metric plots (plots.py), image grids (images.py), attention HTML
(attention.py). Only plots.py writes files, where it is told to."""
