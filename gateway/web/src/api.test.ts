import { ApiError, api, fieldMessages, setToken } from "./api";
import { fetchReplying } from "./test/fixtures";

const FIELDS = ["name", "requirements", "language", "priority", "pipeline"];

describe("fieldMessages", () => {
  it("puts the gateway's field errors under their fields", () => {
    const messages = fieldMessages(
      {
        title: "Unprocessable Entity",
        status: 422,
        detail: "body.name: String should have at least 1 character; body.priority: ...",
        errors: [
          { field: "body.name", reason: "String should have at least 1 character", type: "string_too_short" },
          { field: "body.priority", reason: "Input should be 'low', 'normal' or 'high'", type: "literal_error" },
          { field: "body.labels.x", reason: "too long", type: "string_too_long" },
        ],
      },
      FIELDS,
    );
    expect(messages).toEqual({
      name: "String should have at least 1 character",
      priority: "Input should be 'low', 'normal' or 'high'",
      _form: "body.labels.x: too long",
    });
  });

  it("reads the field a coordinator refusal names first", () => {
    const problem = {
      title: "Bad Request",
      status: 400,
      detail: "pipeline: unknown pipeline 'nope'; known: full, parallel, quick",
      grpc_status: "INVALID_ARGUMENT",
    };
    expect(fieldMessages(problem, FIELDS)).toEqual({ pipeline: "unknown pipeline 'nope'; known: full, parallel, quick" });
  });

  it("keeps other problems for the whole form", () => {
    expect(fieldMessages({ title: "Service Unavailable", status: 503, detail: "coordinator unavailable: x" }, FIELDS)).toEqual({
      _form: "coordinator unavailable: x",
    });
  });
});

describe("request", () => {
  it("sends the bearer token and JSON", async () => {
    setToken("s3cret");
    const { calls } = fetchReplying([201, { id: "wf-1" }]);
    await api.submitWorkflow({ name: "a", requirements: "b", language: "", priority: "low", pipeline: "" });
    const headers = new Headers(calls[0]?.init?.headers);
    expect(calls[0]?.url).toBe("api/distributed/workflows");
    expect(headers.get("Authorization")).toBe("Bearer s3cret");
    expect(headers.get("Content-Type")).toBe("application/json");
  });

  it("sends no Authorization without a token", async () => {
    const { calls } = fetchReplying([200, { workflows: [], next_page_token: "" }]);
    await api.listWorkflows({ state: "running" });
    expect(new Headers(calls[0]?.init?.headers).has("Authorization")).toBe(false);
    expect(calls[0]?.url).toBe("api/distributed/workflows?page_size=50&state=running");
  });

  it("raises problem+json answers as ApiError with the problem", async () => {
    fetchReplying([404, { title: "Not Found", status: 404, detail: "no workflow wf-x" }]);
    const err = await api.getWorkflow("wf-x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(404);
    expect((err as ApiError).message).toBe("no workflow wf-x");
  });
});
