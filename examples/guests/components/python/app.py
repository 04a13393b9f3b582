import re

import wit_world
from wit_world.imports import host
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def check(self, amount: int, country: str) -> bool:
        return amount <= 1000 or country == "DE"

    def classify(self, o: wit_world.Order) -> wit_world.Decision:
        if o.amount <= 1000:
            return wit_world.Decision_Allow()
        if o.country == "DE":
            return wit_world.Decision_Review(f"large order from {o.country}")
        return wit_world.Decision_Deny(f"{o.amount} is over the limit")

    def tags(self, text: str) -> list[str]:
        host.log(f"tags of {len(text)} characters")
        return [word for word in re.split(r"\W+", text.lower()) if word]

    def total(self, amounts: list[int]) -> int:
        if 0 in amounts:
            raise Err("zero is not an amount")
        return sum(amounts)

    def spin(self) -> int:
        turns = 0
        while True:
            turns += 1

    def fail(self, message: str) -> None:
        raise RuntimeError(message)
