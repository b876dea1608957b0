-- wrk script for POST /v1/tokens: the algorithm and the admin token come
-- from the environment (ALG, TOKEN; PURPOSE, default access_token), the
-- claims match the other benchmarks.
wrk.method = "POST"
wrk.body = '{"purpose":"' .. (os.getenv("PURPOSE") or "access_token") .. '","alg":"' .. os.getenv("ALG") ..
  '","claims":{"sub":"user-1234567890","aud":"orders","scope":"orders:read orders:write"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
