// What a TypeScript consumer of Tessera writes, type-checked against types generated from the
// contract: tests/test_generated_clients.py runs `openapi-typescript openapi/openapi.yaml -o
// tessera.d.ts` in a temporary directory, copies this file and tsconfig.json beside it and runs
// `tsc --noEmit`. When the contract changes shape under this code, the check fails.
import type { components, operations } from "./tessera";

type Schemas = components["schemas"];
export type User = Schemas["User"];
export type ApiError = Schemas["Error"];

type OperationId = keyof operations;
/** The JSON request body of an operation. */
type Body<K extends OperationId> =
  NonNullable<operations[K]["requestBody"]> extends { content: { "application/json": infer B } }
    ? B
    : never;
/** The JSON body of one response status of an operation. */
type Answer<K extends OperationId, S extends keyof operations[K]["responses"]> =
  operations[K]["responses"][S] extends { content: { "application/json": infer R } } ? R : never;
type Query<K extends OperationId> = NonNullable<operations[K]["parameters"]["query"]>;

export class TesseraError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiError,
  ) {
    super(`${body.error.code}: ${body.error.message} (request ${body.error.request_id})`);
  }

  /** The fields a 422 names, e.g. ["email"]. */
  fields(): string[] {
    return this.body.error.details.map((detail) => detail.field);
  }
}

type Credentials = { token: string } | { apiKey: string } | null;

async function call<T>(
  base: string,
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE",
  path: string,
  credentials: Credentials,
  options: { body?: unknown; query?: Record<string, string | number | boolean | undefined> } = {},
): Promise<T> {
  const url = new URL(path, base);
  for (const [name, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined) url.searchParams.set(name, String(value));
  }
  const headers: Record<string, string> = { Accept: "application/json" };
  if (credentials && "token" in credentials) headers.Authorization = `Bearer ${credentials.token}`;
  if (credentials && "apiKey" in credentials) headers["X-API-Key"] = credentials.apiKey;
  const init: RequestInit = { method, headers };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(url, init);
  if (!response.ok) throw new TesseraError(response.status, (await response.json()) as ApiError);
  return (await response.json()) as T;
}

export async function register(
  base: string,
  body: Body<"register">,
): Promise<Answer<"register", 201>["data"]> {
  return (await call<Answer<"register", 201>>(base, "POST", "/v1/auth/register", null, { body }))
    .data;
}

export async function login(base: string, email: string, password: string) {
  const body: Body<"login"> = { email, password };
  const answer = await call<Answer<"login", 200>>(base, "POST", "/v1/auth/login", null, { body });
  return { token: answer.data.access_token, refresh: answer.data.refresh_token };
}

export async function me(base: string, token: string): Promise<User> {
  return (await call<Answer<"get_me", 200>>(base, "GET", "/v1/users/me", { token })).data;
}

export async function createKey(
  base: string,
  token: string,
  body: Body<"create_key">,
): Promise<Schemas["ApiKeyWithSecret"]> {
  const answer = await call<Answer<"create_key", 201>>(base, "POST", "/v1/keys", { token }, { body });
  return answer.data;
}

export async function createProject(base: string, token: string, body: Body<"create_project">) {
  return (
    await call<Answer<"create_project", 201>>(base, "POST", "/v1/projects", { token }, { body })
  ).data;
}

/** Every user of the organization, page by page, following `next_cursor`. */
export async function* allUsers(
  base: string,
  credentials: Credentials,
  filters: Omit<Query<"list_users">, "cursor" | "offset"> = {},
): AsyncGenerator<User> {
  let cursor: string | undefined;
  do {
    const query: Query<"list_users"> = { ...filters, limit: 100, ...(cursor ? { cursor } : {}) };
    const page = await call<Answer<"list_users", 200>>(base, "GET", "/v1/users", credentials, {
      query,
    });
    yield* page.data;
    cursor = page.has_more && page.next_cursor ? page.next_cursor : undefined;
  } while (cursor);
}

export async function example(base: string): Promise<string[]> {
  const email = `ada-${Date.now()}@example.com`;
  const password = "Correct-Horse-9-Battery";
  const created = await register(base, {
    email,
    password,
    display_name: "Ada Lovelace",
    organization_name: "Analytical Engines Ltd",
  });
  const { token } = await login(base, email, password);
  const user = await me(base, token);
  const key = await createKey(base, token, {
    name: "Reporting",
    environment: "test",
    scopes: ["users:read"],
  });
  const names: string[] = [`${user.display_name} <${user.email}> in ${created.user.org_id}`];
  for await (const member of allUsers(base, { apiKey: key.secret }, { sort: "email" })) {
    names.push(member.email);
  }
  try {
    await me(base, "not-a-token");
  } catch (error) {
    if (error instanceof TesseraError && error.body.error.code === "AUTHENTICATION_FAILED") {
      names.push(`rejected: request ${error.body.error.request_id}`);
    }
  }
  return names;
}

// Compile-time guarantees of the contract. Each `@ts-expect-error` fails the check if the line
// below it stops being an error, that is, if the contract got looser than clients rely on.
export const knownCode: ApiError["error"]["code"] = "RESOURCE_NOT_FOUND";
// @ts-expect-error error codes are a closed set
export const unknownCode: ApiError["error"]["code"] = "I_AM_A_TEAPOT";
// @ts-expect-error email is required to register
export const noEmail: Body<"register"> = { password: "x", display_name: "x" };
// @ts-expect-error a user's id is a string
export const numericId: User["id"] = 42;
// @ts-expect-error API key scopes come from the permission catalog
export const badScope: Schemas["ApiKeyScope"] = "everything";
