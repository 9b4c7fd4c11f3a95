"""From cells to what a paper needs: statistics, accuracy tables, paired comparisons, plots, the card."""
