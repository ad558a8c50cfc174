"""OpenADR 2.0b: the aggregator as a VEN, taking a utility's DR events and reporting back."""
