"""Domain core shared by every component: readings, units, time and the embedded store."""
