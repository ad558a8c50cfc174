"""The ``jeisson`` command's client side: talking to the aggregator's HTTP API."""
