"""Fleet figures: sites publish hourly boundary-term energies, the fleet report reads them back."""
