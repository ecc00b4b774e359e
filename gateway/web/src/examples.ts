// The seed's workflow examples (examples/workflows/*.json), offered in the submit form.
import type { WorkflowCreate } from "./types";

export const EXAMPLES: readonly WorkflowCreate[] = [
  {
    name: "E-commerce Platform",
    requirements:
      "Create a full-stack e-commerce platform with React frontend, Node.js API, PostgreSQL database, user authentication, product catalog, shopping cart, and payment integration.",
    language: "typescript",
    priority: "high",
    pipeline: "",
  },
  {
    name: "REST API with Microservices",
    requirements:
      "Develop a REST API with microservices architecture, include comprehensive testing, API documentation, containerization, and deployment configuration.",
    language: "python",
    priority: "normal",
    pipeline: "",
  },
  {
    name: "Code Optimization Project",
    requirements:
      "Analyze existing codebase for performance bottlenecks, implement optimizations for CPU and memory usage, add caching strategies, and create benchmarks.",
    language: "python",
    priority: "high",
    pipeline: "",
  },
];

// The pipelines the coordinator ships (coordinator/workflows/pipelines/); others may exist.
export const KNOWN_PIPELINES = ["full", "quick", "parallel"] as const;
