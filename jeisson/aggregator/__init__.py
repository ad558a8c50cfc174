"""The aggregator: registers homes and negotiates their power under DR events."""
