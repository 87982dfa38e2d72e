"""The one error every data source raises."""


class DataError(ValueError):
    """A data set that is missing, malformed or unusable, with what was expected and what was found."""
