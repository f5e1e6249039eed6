-- An exposure also ends when its host is decommissioned: the host is gone, not patched, and an
-- open exposure would count against its fleet for as long as anyone asked.
alter table exposures add column retired_at timestamptz;
