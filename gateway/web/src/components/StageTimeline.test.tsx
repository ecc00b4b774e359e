import { render, screen, within } from "@testing-library/react";
import { workflow } from "../test/fixtures";
import { StageTimeline } from "./StageTimeline";

describe("StageTimeline", () => {
  it("shows for each stage the node that ran it, how long, and the tokens", () => {
    render(<StageTimeline workflow={workflow()} now={Date.parse("2026-11-25T17:06:30Z")} />);
    const generate = screen.getByTestId("stage-generate");
    expect(generate).toHaveAttribute("data-state", "succeeded");
    expect(within(generate).getByTestId("stage-generate-node")).toHaveTextContent("IRONWOODgtx1070");
    expect(generate).toHaveTextContent("1.50 s"); // ran
    expect(generate).toHaveTextContent("7 ms"); // queued
    expect(generate).toHaveTextContent("76 / 170");
    expect(generate).toHaveTextContent("85.0 tok/s");
    const review = screen.getByTestId("stage-review");
    expect(review).toHaveAttribute("data-state", "queued");
    expect(review).toHaveTextContent("after generate");
    expect(within(review).getByTestId("stage-review-node")).toHaveTextContent("–");
  });
});
