__version__ = version = '0.0.1.fake'
