class PlainModel:
    pass
