"""The class prompts CLIP sees (zero-shot heads, CLIP filtering, generator prompts)."""

PROMPT = "a photo of a {name}, a type of {metaclass}."


def class_prompts(classes: list[str], metaclass: str) -> list[str]:
    return [PROMPT.format(name=c, metaclass=metaclass or "object") for c in classes]
