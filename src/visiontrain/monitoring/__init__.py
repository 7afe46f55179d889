"""Drift monitoring: reference statistics recorded at training time, compared with what the model sees later."""
