"""One module per application: its model, fit / predict / evaluate / save / load, and baselines."""
