"""Multi-task CNN for image aesthetic assessment (Soydaner & Wagemans 2023), reproduced as a workflow."""

__version__ = "0.1.0"
