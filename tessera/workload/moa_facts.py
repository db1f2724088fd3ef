"""Facts that ship with Tessera for generated multiple-choice questions, and unit conversion factors.

Plain general knowledge (capitals, science, geography): each entry is (question, right answer, wrong answers).
"""
from __future__ import annotations

FACTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", "Paris", ("Berlin", "Madrid", "Rome", "Lisbon")),
    ("What is the capital of Japan?", "Tokyo", ("Beijing", "Seoul", "Bangkok", "Osaka")),
    ("What is the capital of Italy?", "Rome", ("Milan", "Paris", "Vienna", "Athens")),
    ("What is the capital of Germany?", "Berlin", ("Munich", "Vienna", "Paris", "Prague")),
    ("What is the capital of Spain?", "Madrid", ("Barcelona", "Lisbon", "Rome", "Seville")),
    ("What is the capital of Canada?", "Ottawa", ("Toronto", "Vancouver", "Montreal", "Calgary")),
    ("What is the capital of Egypt?", "Cairo", ("Alexandria", "Nairobi", "Tunis", "Rabat")),
    ("Which planet is known as the Red Planet?", "Mars", ("Venus", "Jupiter", "Saturn", "Mercury")),
    ("Which planet is the largest in the Solar System?", "Jupiter", ("Saturn", "Earth", "Neptune", "Mars")),
    ("Which planet is closest to the Sun?", "Mercury", ("Venus", "Earth", "Mars", "Neptune")),
    ("What is the chemical symbol for water?", "H2O", ("CO2", "O2", "NaCl", "H2")),
    ("What gas do plants take in from the air for photosynthesis?", "Carbon dioxide",
     ("Oxygen", "Nitrogen", "Helium", "Hydrogen")),
    ("What is the largest ocean on Earth?", "Pacific Ocean",
     ("Atlantic Ocean", "Indian Ocean", "Arctic Ocean", "Southern Ocean")),
    ("How many legs does a spider have?", "Eight", ("Six", "Four", "Ten", "Twelve")),
    ("What is the freezing point of water in degrees Celsius?", "0", ("100", "32", "10", "-10")),
    ("Which animal is the largest mammal?", "Blue whale", ("Elephant", "Giraffe", "Shark", "Hippopotamus")),
    ("What is the longest river in Africa?", "Nile", ("Congo", "Niger", "Zambezi", "Amazon")),
    ("How many days are in a leap year?", "366", ("365", "364", "360", "367")),
    ("Which continent is Brazil in?", "South America", ("Africa", "Europe", "Asia", "North America")),
    ("What is the hardest natural material?", "Diamond", ("Gold", "Iron", "Granite", "Quartz")),
)

# (larger unit, smaller unit, how many smaller units make one larger)
UNITS: tuple[tuple[str, str, int], ...] = (
    ("meters", "centimeters", 100), ("kilometers", "meters", 1000), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("days", "hours", 24), ("kilograms", "grams", 1000),
    ("weeks", "days", 7), ("feet", "inches", 12), ("dozens", "items", 12), ("liters", "milliliters", 1000),
)
