-- wrk script: POST /v1/trainings with a caller's token (TUNEYARD_TOKEN), each
-- request for its own destination so the rows do not all meet in one place.
local token = os.getenv("TUNEYARD_TOKEN")
local trainer = "ostris/flux-dev-lora-trainer:" .. string.rep("e4", 32)
local n = 0
function request()
  n = n + 1
  local body = string.format(
    '{"destination": "acme/faces-%d", "trainer": "%s", ' ..
    '"input": {"input_images": "https://example.com/set-%d.zip", "steps": 1000}, ' ..
    '"metadata": {"team": "vision", "run": "%d"}}', n % 500, trainer, n, n)
  return wrk.format("POST", "/v1/trainings", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
