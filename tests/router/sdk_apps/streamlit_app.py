"""A Streamlit Space as a user would push it."""

import streamlit as st

st.title("Hello from Streamlit")
st.write("Hello World!")
