import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { fetchReplying, workflow } from "../test/fixtures";
import { WorkflowForm } from "./WorkflowForm";

describe("WorkflowForm", () => {
  it("shows the API's field errors inline, under the fields they name", async () => {
    fetchReplying([
      422,
      {
        title: "Unprocessable Entity",
        status: 422,
        detail: "...",
        errors: [
          { field: "body.name", reason: "String should have at least 1 character", type: "string_too_short" },
          { field: "body.requirements", reason: "String should have at least 1 character", type: "string_too_short" },
        ],
      },
    ]);
    const onSubmitted = vi.fn();
    render(<WorkflowForm onSubmitted={onSubmitted} />);
    await userEvent.click(screen.getByRole("button", { name: "Submit workflow" }));
    const name = screen.getByLabelText("Name");
    expect(name).toHaveAttribute("aria-invalid", "true");
    expect(name).toHaveAccessibleDescription("String should have at least 1 character");
    expect(screen.getByTestId("error-requirements")).toHaveTextContent("String should have at least 1 character");
    expect(onSubmitted).not.toHaveBeenCalled();
    // Typing in a field clears its message.
    await userEvent.type(name, "x");
    expect(screen.queryByTestId("error-name")).toBeNull();
    expect(screen.getByTestId("error-requirements")).toBeInTheDocument();
  });

  it("shows a coordinator refusal under the field it names", async () => {
    fetchReplying([400, { title: "Bad Request", status: 400, detail: "pipeline: unknown pipeline 'nope'; known: full, parallel, quick" }]);
    render(<WorkflowForm onSubmitted={vi.fn()} />);
    await userEvent.type(screen.getByLabelText("Pipeline"), "nope");
    await userEvent.click(screen.getByRole("button", { name: "Submit workflow" }));
    expect(await screen.findByTestId("error-pipeline")).toHaveTextContent("unknown pipeline 'nope'; known: full, parallel, quick");
  });

  it("submits a seed example and hands back the accepted workflow", async () => {
    const accepted = workflow({ id: "wf-9" });
    const { calls } = fetchReplying([201, accepted]);
    const onSubmitted = vi.fn();
    render(<WorkflowForm onSubmitted={onSubmitted} />);
    await userEvent.selectOptions(screen.getByLabelText("Load an example"), "Code Optimization Project");
    expect(screen.getByLabelText("Name")).toHaveValue("Code Optimization Project");
    expect(screen.getByLabelText("Priority")).toHaveValue("high");
    await userEvent.click(screen.getByRole("button", { name: "Submit workflow" }));
    expect(onSubmitted).toHaveBeenCalledWith(accepted);
    expect(JSON.parse(calls[0]?.init?.body as string)).toMatchObject({ name: "Code Optimization Project", language: "python", priority: "high" });
    expect(screen.getByLabelText("Name")).toHaveValue("");
  });
});
