-- klua.log: structured logging for controller scripts, through the backend
-- (the runtime writes one line per call with the fields as key=value).
--
--   klua.log.info("mirrored", { namespace = ns, name = name, copies = 3 })
--   klua.log.error("cannot mirror", { err = tostring(err) })
--
-- Levels: error, warn, info, debug. fields is a table (or nil); values are
-- passed as they are (the runtime formats them). msg must be a string.
local klua = require("klua")

local M = {}

local LEVELS = { "error", "warn", "info", "debug" }

for _, level in ipairs(LEVELS) do
  M[level] = function(msg, fields)
    if type(msg) ~= "string" then
      error("klua.log." .. level .. ": msg must be a string, got " .. type(msg), 2)
    end
    if fields ~= nil and type(fields) ~= "table" then
      error("klua.log." .. level .. ": fields must be a table, got " .. type(fields), 2)
    end
    klua._backend().log(level, msg, fields)
  end
end

M.warning = M.warn
M.levels = LEVELS

return M
