"""Models the product trains itself and ships: the reading model (span + has-answer)."""
