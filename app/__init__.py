"""The Streamlit UI and the command line: the only package that imports streamlit."""
