"""Run folders and the results in them: the run store, the leaderboard, and results as DataFrames."""
