"""A Gradio Space as a user would push it: launched with the env the control plane sets."""

import time

import gradio as gr


def greet(name: str) -> str:
    return f"Hello {name}!"


def count(n: int):
    # A generator goes through the queue and streams each value to the client as it is produced.
    for i in range(int(n)):
        time.sleep(0.05)
        yield str(i)


with gr.Blocks() as demo:
    name = gr.Textbox()
    greeting = gr.Textbox()
    name.submit(greet, name, greeting, api_name="greet")
    n = gr.Number()
    counted = gr.Textbox()
    n.submit(count, n, counted, api_name="count")

demo.launch()
